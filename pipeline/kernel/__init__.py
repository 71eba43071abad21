"""The numeric kernel: Black-76, event laws as normal mixtures, payoffs. Pure NumPy, no I/O."""
