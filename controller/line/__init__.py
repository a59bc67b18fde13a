"""The line: the controller that runs lots, the scheduler that gives wafers to tools,
recovery after a stop, the wafer journal on the store, the line event stream, E10
states and the makespan lower bound."""
