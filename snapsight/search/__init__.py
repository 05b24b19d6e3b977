"""Search your own image folders by text or by image through a FAISS index of their features."""
