"""dose."""
