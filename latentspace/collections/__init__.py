"""Collections: records bound to one space, and how they are searched."""
