"""The service, top of the pipeline: process wiring, the consumer loop, commits and health.

Also what a process does around the pipeline before it starts: waiting for the stores,
creating topics, applying SQL migrations. Imports every package below it; none imports it.
"""
