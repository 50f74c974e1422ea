"""Wire transports: ZeroMQ, OSC, VMC."""
