"""The reliability tier: bad input, faults and misuse, one test per class of defect (see the
README's "Reliability" section). Fast (tiny random models, generated audio): part of ``make check``."""
