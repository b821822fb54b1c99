"""Text primitives shared by gates, splits and monitoring: normalisation, n-grams, MinHash/LSH."""
