"""Inference backends behind one interface (see rtik.backends.base)."""
