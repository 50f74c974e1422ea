"""The wire: the message schema, its transports (ZeroMQ, OSC, VMC) and the client library."""
