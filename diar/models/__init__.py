"""Models by kind; importing this package registers every model."""
