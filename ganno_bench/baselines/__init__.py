"""Every baseline agent and the procedures that make them: scripted schedules and
batch-size rules, best-of, PBT, BOIL, Arbiter, grid tuning, saved policies and PPO
training, and the name -> agent zoo that reads ``baselines/*.toml``."""
