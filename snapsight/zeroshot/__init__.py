"""Zero-shot classification with CLIP models and a FAISS label index."""
