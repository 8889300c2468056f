"""`asgiscale bench`: what one worker carries at a latency objective, measured with an open-loop generator."""
