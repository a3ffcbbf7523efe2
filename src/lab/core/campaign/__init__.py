"""Campaign science: what is searched (space), who proposes (planner), the loop that runs it
(closed_loop), what a sample and a measurement are (formulation), what is optimised
(objective, pareto) and where every experiment is recorded (store)."""
