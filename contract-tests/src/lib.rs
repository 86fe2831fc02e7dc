//! Contract tests live in tests/.
