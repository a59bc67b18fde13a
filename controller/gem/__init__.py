"""The factory host interface: SECS/GEM over HSMS-SS (docs/gem.md)."""
