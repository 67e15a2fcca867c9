"""Storage: versioned datasets (leaf adapter)."""
