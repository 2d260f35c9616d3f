//! Checks of the `sched` module (sched.bpf.c): thread timelines and CPU
//! samples of the workload process, which the selftest names as the process
//! to profile. The workload spins on two threads for 150 ms each and sleeps
//! 20 times for 1 ms (`Report::busy_ms`, `Report::sleeps`), so a module that
//! works reports on-CPU samples with stacks, slices that account for the
//! spinning, and the sleeps as `sleep` slices (where the kernel can name the
//! syscall a thread blocked in).

use super::{Observed, Outcome};
use kindling_events::model::{Event, EventBody};
use kindling_events::sched::{OffCpuReason, SchedEvent, SchedSlice};

pub fn checks(obs: &Observed) -> Vec<Outcome> {
    let mut out = vec![
        Outcome::new("sched_sample on-CPU samples", samples(obs)),
        Outcome::new("sched_stack frames", stacks(obs)),
        Outcome::new("sched_slice timelines", timelines(obs)),
    ];
    out.push(if obs.features.task_pt_regs {
        Outcome::new("sched_slice sleep reason", sleeps(obs))
    } else {
        Outcome::not_applicable("sched_slice sleep reason", "no bpf_task_pt_regs: the blocking syscall is unknown")
    });
    out
}

fn sched_of<'a>(obs: &'a Observed) -> impl Iterator<Item = (&'a Event, &'a SchedEvent)> + 'a {
    obs.of_workload().filter_map(|e| match &e.body {
        EventBody::Sched(s) => Some((e, s)),
        _ => None,
    })
}

fn slices(obs: &Observed) -> impl Iterator<Item = (&Event, &SchedSlice)> {
    sched_of(obs).filter_map(|(e, s)| match s {
        SchedEvent::Slice(sl) => Some((e, sl)),
        _ => None,
    })
}

/// Samples of the spinning threads, with a user stack.
fn samples(obs: &Observed) -> Result<String, String> {
    let mut n = 0;
    let mut with_stack = 0;
    for (e, s) in sched_of(obs) {
        if let SchedEvent::Sample(smp) = s {
            obs.sane_header(e)?;
            n += 1;
            with_stack += (smp.ustack != 0) as u32;
        }
    }
    // 300 ms of CPU at 99 Hz is ~30 samples; emulated or busy hosts give fewer.
    if n < 3 {
        return Err(format!("{n} samples for {} ms of CPU on two threads", 2 * obs.report.busy_ms));
    }
    if with_stack == 0 {
        return Err(format!("none of {n} samples has a user stack"));
    }
    Ok(format!("{n} samples, {with_stack} with a user stack"))
}

/// Stack records: frames present, kernel addresses in the kernel's half.
fn stacks(obs: &Observed) -> Result<String, String> {
    let (mut kernel, mut user) = (0, 0);
    for (_, s) in sched_of(obs) {
        if let SchedEvent::Stack(st) = s {
            if st.frames.is_empty() {
                return Err(format!("stack {:#x} has no frames", st.id));
            }
            if st.kernel {
                if let Some(f) = st.frames.iter().find(|f| **f < 0xffff_8000_0000_0000) {
                    return Err(format!("kernel stack {:#x} has a user address {f:#x}", st.id));
                }
                kernel += 1;
            } else {
                user += 1;
            }
        }
    }
    if kernel == 0 || user == 0 {
        return Err(format!("{kernel} kernel and {user} user stacks"));
    }
    Ok(format!("{kernel} kernel and {user} user stacks"))
}

/// Slices in order (on-CPU start <= off-CPU start <= wakeup <= switch-in)
/// whose on-CPU parts account for the spinning.
fn timelines(obs: &Observed) -> Result<String, String> {
    let mut n = 0;
    let mut oncpu_ns = 0u64;
    for (e, s) in slices(obs) {
        obs.sane_header(e)?;
        n += 1;
        let end = e.ts_ns;
        if s.offcpu_start_ns > end || (s.wake_ns != 0 && (s.wake_ns < s.offcpu_start_ns || s.wake_ns > end)) {
            return Err(format!("slice out of order: off {} wake {} in {end}", s.offcpu_start_ns, s.wake_ns));
        }
        if s.oncpu_start_ns != 0 {
            if s.oncpu_start_ns > s.offcpu_start_ns {
                return Err(format!("slice out of order: on {} off {}", s.oncpu_start_ns, s.offcpu_start_ns));
            }
            oncpu_ns += s.offcpu_start_ns - s.oncpu_start_ns;
        }
    }
    if n == 0 {
        return Err("no slices of the workload".into());
    }
    // The workload spins by the wall clock (a busy host gives it less CPU) and
    // does much else besides (slowly, under emulation): its on-CPU time must
    // agree with the samples (99 Hz, ~10 ms each).
    let on_ms = oncpu_ns / 1_000_000;
    let sampled_ms = sched_of(obs).filter(|(_, s)| matches!(s, SchedEvent::Sample(_))).count() as u64 * 1000 / 99;
    if on_ms == 0 {
        return Err(format!("{n} slices and no time on CPU; the workload spun {} ms", 2 * obs.report.busy_ms));
    }
    if on_ms * 2 + 30 < sampled_ms || sampled_ms * 2 + 30 < on_ms {
        return Err(format!("{n} slices with {on_ms} ms on CPU, but the samples say {sampled_ms} ms"));
    }
    Ok(format!("{n} slices, {on_ms} ms on CPU (samples: {sampled_ms} ms)"))
}

/// The 1 ms sleeps come back as `sleep` slices (nanosleep/clock_nanosleep).
fn sleeps(obs: &Observed) -> Result<String, String> {
    let n = slices(obs).filter(|(_, s)| s.reason() == OffCpuReason::Sleep).count() as u32;
    let want = obs.report.sleeps / 2;
    if n < want {
        return Err(format!("{n} sleep slices for {} sleeps", obs.report.sleeps));
    }
    Ok(format!("{n} sleep slices for {} sleeps", obs.report.sleeps))
}
