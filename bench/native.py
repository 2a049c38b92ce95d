"""The load generator's C part (``bench/measure.c``): built with the system's C compiler, loaded with ctypes.

``build()`` compiles the source once per content (``bench/results/data/measure-<hash>.so``;
a changed source builds a new file) and returns its path; ``Native`` wraps one measuring
context: ``add`` a socket, ``run`` until a command arrives, then read what was counted.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from bench import common

SOURCE = Path(__file__).resolve().parent / "measure.c"
MODES = {"idle": 0, "fanout": 1, "e2e": 2}

_I64P = ctypes.POINTER(ctypes.c_int64)


class _Row(ctypes.Structure):
    """One e2e row (``row_t`` in measure.c)."""

    _fields_ = [("ns", ctypes.c_int64), ("client", ctypes.c_int32), ("sym", ctypes.c_int32), ("close", ctypes.c_double)]


def build() -> Path:
    """The compiled library for the current source (compiled now if missing)."""
    source = SOURCE.read_bytes()
    out = common.DATA_DIR / f"measure-{hashlib.sha256(source).hexdigest()[:16]}.so"
    if out.exists():
        return out
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise RuntimeError("the load generator needs a C compiler (cc or gcc, or CC=...) to build bench/measure.c")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    subprocess.run([cc, "-O2", "-Wall", "-shared", "-fPIC", "-o", str(tmp), str(SOURCE)], check=True)
    tmp.replace(out)  # atomic: load generators starting together never load half a file
    return out


def _library() -> ctypes.CDLL:
    lib = ctypes.CDLL(str(build()))
    vp = ctypes.c_void_p
    lib.mg_new.restype = vp
    lib.mg_new.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]
    lib.mg_add.argtypes = [vp, ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
    lib.mg_reset.argtypes = [vp]
    lib.mg_run.argtypes = [vp, ctypes.c_int, ctypes.c_int64]
    for name, restype in (
        ("mg_received", ctypes.c_int64),
        ("mg_last_ns", ctypes.c_int64),
        ("mg_unknown", ctypes.c_int64),
        ("mg_closed", ctypes.c_int),
        ("mg_counts", _I64P),
        ("mg_last", _I64P),
        ("mg_nlat", ctypes.c_size_t),
        ("mg_lat", _I64P),
        ("mg_ne", ctypes.c_size_t),
        ("mg_rows", ctypes.POINTER(_Row)),
    ):
        getattr(lib, name).restype = restype
        getattr(lib, name).argtypes = [vp]
    lib.mg_errors.restype = ctypes.POINTER(ctypes.c_char)
    lib.mg_errors.argtypes = [vp, ctypes.POINTER(ctypes.c_size_t)]
    lib.mg_free.argtypes = [vp]
    return lib


class Native:
    """One measuring context: ``clients`` connections, each counted per symbol of ``symbols``."""

    def __init__(self, mode: str, clients: int, symbols: list[str]) -> None:
        self.lib = _library()
        self.symbols = symbols
        self.clients = clients
        names = (ctypes.c_char_p * len(symbols))(*(s.encode() for s in symbols))
        self.ctx = self.lib.mg_new(MODES[mode], clients, len(symbols), names)
        if not self.ctx:
            raise MemoryError("mg_new failed")

    def add(self, fd: int, client: int, pending: bytes = b"") -> None:
        """Watch ``fd`` (connection ``client``); ``pending``: bytes already read past the set-up."""
        rc = self.lib.mg_add(self.ctx, fd, client, pending, len(pending))
        if rc < 0:
            raise OSError(-rc, os.strerror(-rc))

    def run(self, control_fd: int, poll_ns: int) -> None:
        """Read every socket until ``control_fd`` is readable."""
        rc = self.lib.mg_run(self.ctx, control_fd, poll_ns)
        if rc < 0:
            raise OSError(-rc, os.strerror(-rc))

    def reset(self) -> None:
        self.lib.mg_reset(self.ctx)

    @property
    def received(self) -> int:
        return self.lib.mg_received(self.ctx)

    @property
    def last_ns(self) -> int:
        return self.lib.mg_last_ns(self.ctx)

    @property
    def unknown(self) -> int:
        return self.lib.mg_unknown(self.ctx)

    @property
    def closed(self) -> int:
        return self.lib.mg_closed(self.ctx)

    def errors(self) -> list[str]:
        n = ctypes.c_size_t()
        raw = self.lib.mg_errors(self.ctx, ctypes.byref(n))
        return [e.decode(errors="replace") for e in ctypes.string_at(raw, n.value).split(b"\0") if e]

    def seqs(self) -> list[dict[str, list[int]]]:
        """Per client: ``{symbol: [last seq, data messages received]}`` for the symbols it received."""
        size = self.clients * len(self.symbols)
        counts = self.lib.mg_counts(self.ctx)[:size]
        last = self.lib.mg_last(self.ctx)[:size]
        width = len(self.symbols)
        out = []
        for client in range(self.clients):
            base = client * width
            out.append({s: [last[base + k], counts[base + k]] for k, s in enumerate(self.symbols) if counts[base + k]})
        return out

    def latencies_ns(self):
        """Fan-out: every latency of the measured window, int64 ns (a copy)."""
        import numpy as np

        n = self.lib.mg_nlat(self.ctx)
        if not n:
            return np.zeros(0, dtype=np.int64)
        return np.ctypeslib.as_array(self.lib.mg_lat(self.ctx), shape=(n,)).copy()

    def e2e_rows(self) -> list[tuple[int, int, str, float]]:
        """e2e: ``(receive ns, client, symbol, close)`` per data message."""
        n = self.lib.mg_ne(self.ctx)
        if not n:
            return []
        names = self.symbols
        return [(r.ns, r.client, names[r.sym], r.close) for r in self.lib.mg_rows(self.ctx)[:n]]

    def close(self) -> None:
        if self.ctx:
            self.lib.mg_free(self.ctx)
            self.ctx = None
