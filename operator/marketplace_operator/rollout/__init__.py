"""Fleet-paced rolling restarts: the pure planner, its observation and the replacement gate."""
