"""executors: run jobs on pluggable executors through a supervised pool."""
