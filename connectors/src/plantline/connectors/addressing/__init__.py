"""Protocol addressing, pure: what the configuration validates and the sources read with."""
