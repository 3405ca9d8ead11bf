"""Dice per class per subject, MSE/PSNR, and evaluating a model on a split."""
