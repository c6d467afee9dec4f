"""What the weather provider (Open-Meteo) allows, declared once: read by the client, quota and simulator."""

# Open-Meteo answers at most this many locations in one request.
MAX_LOCATIONS_PER_REQUEST = 1000

# The free tier counts every location asked for, in these sliding windows.
FREE_TIER_LOCATIONS_PER_MINUTE = 600
FREE_TIER_LOCATIONS_PER_HOUR = 5000
FREE_TIER_LOCATIONS_PER_DAY = 10000
