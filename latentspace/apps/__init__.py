"""What people build on embeddings, each a small module that works on any Collection."""
