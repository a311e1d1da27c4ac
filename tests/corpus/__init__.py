"""A corpus of damaged inputs for every reader (see make_corpus)."""
