"""The operator's application: the `lab` command (cli), its campaign views (campaign_info), the
emergency stop (estop), the demo, the commander (a mission script's view of the lab), the lab
session the command and benches share, and the progress line."""
