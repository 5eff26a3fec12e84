"""The composition root: the `audioavatar` command wires engine/, viewer/ and distill/ together.
Nothing imports this package (docs/architecture.md); the library lives in engine/."""
