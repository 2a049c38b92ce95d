"""The hub's own Redis pub/sub subscriber (``hub.RedisPubSubSource``) on the real Redis."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from channels_redis.pubsub import RedisPubSubChannelLayer

from marketdata.live.hub import FanoutHub
from marketdata.live.hub.bus import encode_command, parse_reply
from marketdata.live.protocol import ChannelLayerPublisher
from marketdata.tests.ws_support import redis_url

PREFIX = "hubdirect-test"


class Member:
    def __init__(self) -> None:
        self.got: list[tuple[str, str]] = []

    def offer(self, key: str, text: str) -> None:
        self.got.append((key, text))


@pytest.fixture(params=["resp", "redis-py"])
async def hub(request, settings):
    settings.LIVE_PUBSUB_CLIENT = request.param
    layer = RedisPubSubChannelLayer(hosts=[redis_url()], prefix=PREFIX)
    hub = FanoutHub(layer)
    assert hub.direct is not None  # the Redis pub/sub layer is read directly
    yield hub
    await hub.aclose()
    await layer.flush()


@pytest.fixture
async def client():
    client = aioredis.Redis.from_url(redis_url())
    yield client
    await client.aclose()


async def eventually(check, within: float = 3.0) -> None:
    async with asyncio.timeout(within):
        while not await check():  # noqa: ASYNC110 - polling Redis state, no event exists for it
            await asyncio.sleep(0.02)


async def subscribers(client, channel: str) -> int:
    return dict(await client.pubsub_numsub(channel))[channel.encode()]


async def test_the_engines_publisher_reaches_members_once_per_message(hub):
    first, second = Member(), Member()
    await hub.join("quote.7", first)
    await hub.join("quote.7", second)
    await hub.join("bar1m.7", second)
    publisher = ChannelLayerPublisher(hub.layer)
    big = "x" * 100_000  # split over several socket reads
    await publisher.publish([("quote.7", '{"seq":1}'), ("bar1m.7", '{"timestamp":"T1"}'), ("quote.7", big)])
    await eventually(lambda: _async(len(second.got) == 3))
    assert first.got == [("quote.7", '{"seq":1}'), ("quote.7", big)]
    assert second.got == [("quote.7", '{"seq":1}'), ("bar1m.7@T1", '{"timestamp":"T1"}'), ("quote.7", big)]
    assert hub.messages == 3


async def test_one_subscription_per_group_and_leaving_unsubscribes(hub, client):
    channel = f"{PREFIX}__group__quote.8"
    members = [Member() for _ in range(3)]
    for member in members:
        await hub.join("quote.8", member)
    assert await subscribers(client, channel) == 1
    for member in members:
        hub.leave("quote.8", member)
    await eventually(lambda: _equals(subscribers(client, channel), 0))
    assert "quote.8" not in hub.routes


async def test_a_dropped_connection_is_reopened_and_resubscribed(hub, client):
    channel = f"{PREFIX}__group__quote.9"
    member = Member()
    await hub.join("quote.9", member)
    subscriber = next(iter(hub.direct.shards.values()))
    if hasattr(subscriber, "protocol"):
        port = subscriber.protocol.transport.get_extra_info("sockname")[1]
        ours = [c["id"] for c in await client.client_list() if c["addr"].endswith(f":{port}")]

        def connected():
            return subscriber.protocol is not None and not subscriber.protocol.lost
    else:
        ours = [c["id"] for c in await client.client_list() if c["name"] == "marketapp-hub"]
        connected = subscriber.connected
    assert len(ours) == 1
    await client.client_kill_filter(_id=ours[0])
    await eventually(lambda: _equals(subscribers(client, channel), 1))
    await eventually(lambda: _async(connected()))
    await ChannelLayerPublisher(hub.layer).publish([("quote.9", "after the reconnect")])
    await eventually(lambda: _async(member.got == [("quote.9", "after the reconnect")]))


def test_resp_encoding_and_partial_replies():
    assert encode_command("SUBSCRIBE", b"a\r\nb") == b"*2\r\n$9\r\nSUBSCRIBE\r\n$4\r\na\r\nb\r\n"
    reply = b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"
    assert parse_reply(reply, 0) == ([b"subscribe", b"ch", 1], len(reply))
    for cut in range(1, len(reply)):
        assert parse_reply(reply[:cut], 0)[1] == -1  # incomplete: wait for more bytes
    assert str(parse_reply(b"-ERR nope\r\n", 0)[0]) == "ERR nope"


async def _async(value):
    return value


async def _equals(awaitable, expected) -> bool:
    return (await awaitable) == expected
