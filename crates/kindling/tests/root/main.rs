//! Root tests: they load the real BPF programs, drive real servers and
//! clients, and compare what Kindling saw with the ground truth the clients,
//! servers and kernel report. They fail (never skip) when not run as root.

mod capture;
mod network;
mod nginx;
mod profile;
mod requests;
mod servers;
mod service_map;
mod startup;
mod traceprof;
mod util;
