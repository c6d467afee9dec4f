"""The dashboard: pages for people, charts and the Refresh button."""
