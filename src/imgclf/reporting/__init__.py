"""What a run shows: test metrics, figures, heatmaps, label issues, the plots page, the pull-request report."""
