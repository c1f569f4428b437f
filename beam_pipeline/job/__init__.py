"""The Beam job: raw schema, the split, analyze-and-transform, statistics, the sink, progress, and the preprocess command."""
