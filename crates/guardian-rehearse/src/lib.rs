//! guardian's fire drills.
//!
//! [`report`] turns what a drill observed (checks, a timeline of events with block numbers and
//! milliseconds from the anomaly) into `report.json`, `report.md` and an SVG timeline an operator
//! can open. Rendering is pure; [`report::write`] is the only function that touches files.

pub mod report;
