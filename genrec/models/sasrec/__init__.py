"""SASRec baseline."""
