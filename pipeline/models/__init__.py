"""Models and their training: the shared loop and schedule, a run (run key, resume, outputs), rate EP, backprop, EqSpike."""
