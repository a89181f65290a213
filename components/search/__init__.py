"""search: the compression search space, knowledge-distilled students and the selection rule."""
