"""Line data out to the fab: the line event stream published to an MQTT broker.

``topics`` turns events into messages and keeps the current state of the line
(what is retained on the broker); ``mqtt`` carries them to the broker without
ever making the line wait (docs/decisions/0015-mqtt-feed.md, docs/events.md).
"""
