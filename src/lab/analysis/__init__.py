"""Reading what the lab recorded: campaign reports and plots (report) and a recording's tf
history (tf_history)."""
