"""The shared base every app builds on: base model, encrypted field, admin actions, API plumbing.

It imports no app of the project; the apps and the wiring (``marketapp``) import it.
"""
