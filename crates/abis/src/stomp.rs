//! A STOMP 1.2 client over TCP: the transport MOSIP uses (through ActiveMQ) between its registration processor and an ABIS.
