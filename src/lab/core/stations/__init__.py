"""Stations: their kinds and processes (station), and the emulators that answer for the
instruments from measured data (emulators)."""
