"""Comparing models without running them: RMSE per layer and kind, BN scale/shift, tensor stats."""
