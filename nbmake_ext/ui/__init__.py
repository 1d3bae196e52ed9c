"""Views: text tables and summaries (the widget arrives on top of them)."""
