"""Market price intelligence: validation against manipulation, impact, forecasts and early warning."""
