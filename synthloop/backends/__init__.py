"""Where text comes from besides the loop's own in-process model: model servers."""
