//! The test harness itself: the servers every other subject relies on start, answer and stop.

mod servers;
