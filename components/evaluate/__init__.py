"""evaluate: every stage's accuracy on the test split, and the gate that blesses the int8 file."""
