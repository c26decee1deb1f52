//! Simulated signaling between PeerConnection nodes, always through JSON strings as in the
//! seed tutorial: descriptions as `RTCSessionDescriptionInit`, candidates as
//! `RTCIceCandidateInit`. A channel between two nodes is ordered (a candidate never
//! overtakes the description sent before it) and has a delay.
//!
//! Two ways to exchange candidates, as applications do:
//! - trickle ([`Network::trickle`]): descriptions are sent as created (no candidates in
//!   them) and every `Event::IceCandidate` is forwarded as it appears;
//! - all-at-once (no trickle on the channel): the sender waits until gathering is
//!   complete and sends `local_description()`, which then lists every candidate.
//!
//! Candidates that arrive before any remote description are held and added right after
//! the next one is set, as a typical signaling client does.

use std::time::Duration;

use sansrtc::peer::{Event, IceGatheringState, OfferOptions};
use sansrtc::sdp::{IceCandidateInit, SessionDescription};

use crate::network::{Network, NodeId};

/// How long `negotiate` waits for gathering to complete or a description to arrive.
const SIGNALING_WAIT: Duration = Duration::from_secs(60);
/// Most signaling messages in flight, and most candidates held for a later description.
const MAX_SIGNALING: usize = 10_000;

/// A signaling channel `from -> to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Channel {
    delay: Duration,
    trickle: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SignalBody {
    Description(String),
    Candidate(String),
}

/// A description that went over signaling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentDescription {
    /// When it was sent (virtual time since the start).
    pub at: Duration,
    /// The sender.
    pub from: NodeId,
    /// The receiver.
    pub to: NodeId,
    /// What was sent.
    pub description: SessionDescription,
}

impl SentDescription {
    /// How many `a=candidate` lines it carries.
    pub fn candidate_count(&self) -> usize {
        count_candidates(&self.description.sdp)
    }
}

/// A signaling message on its way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Signal {
    from: NodeId,
    to: NodeId,
    body: SignalBody,
}

fn count_candidates(sdp: &str) -> usize {
    sdp.lines()
        .filter(|l| l.starts_with("a=candidate:"))
        .count()
}

impl Network {
    /// Open the channel `from -> to` with `delay`, forwarding every `IceCandidate` event of
    /// `from` as JSON (trickle ICE). Descriptions on it are sent as created.
    pub fn trickle(&mut self, from: NodeId, to: NodeId, delay: Duration) {
        self.channels.insert(
            (from, to),
            Channel {
                delay,
                trickle: true,
            },
        );
    }

    /// Open the channel `from -> to` with `delay` and no trickle: descriptions wait for
    /// gathering to complete and carry every candidate (the default for a pair with no
    /// channel is this with no delay).
    pub fn signaling_delay(&mut self, from: NodeId, to: NodeId, delay: Duration) {
        self.channels.insert(
            (from, to),
            Channel {
                delay,
                trickle: false,
            },
        );
    }

    fn channel(&self, from: NodeId, to: NodeId) -> Channel {
        self.channels.get(&(from, to)).copied().unwrap_or(Channel {
            delay: Duration::ZERO,
            trickle: false,
        })
    }

    /// Problems met while applying signaling messages (failed `set_remote_description`,
    /// rejected candidates, bad JSON), in order.
    pub fn signaling_errors(&self) -> &[String] {
        &self.signaling_errors
    }

    /// Offer from `a`, answer from `b`, each as JSON over the channel between them (see the
    /// module doc for trickle versus all-at-once). Runs the network while descriptions
    /// travel or gathering completes. Errors say which step failed.
    pub fn negotiate(&mut self, a: NodeId, b: NodeId) -> Result<(), String> {
        self.negotiate_with(a, b, OfferOptions::default())
    }

    /// As [`Network::negotiate`] with offer options (e.g. an ICE restart).
    pub fn negotiate_with(
        &mut self,
        a: NodeId,
        b: NodeId,
        options: OfferOptions,
    ) -> Result<(), String> {
        let now = self.now();
        let offer = self
            .peer(a)
            .create_offer(options)
            .map_err(|e| format!("create_offer: {e}"))?;
        self.peer(a)
            .set_local_description(now, offer.clone())
            .map_err(|e| format!("set_local_description(offer): {e}"))?;
        self.send_created(a, b, offer)?;
        let answer = self
            .peer(b)
            .create_answer()
            .map_err(|e| format!("create_answer: {e}"))?;
        let now = self.now();
        self.peer(b)
            .set_local_description(now, answer.clone())
            .map_err(|e| format!("set_local_description(answer): {e}"))?;
        self.send_created(b, a, answer)
    }

    /// Send a description just set locally: as created when the channel trickles,
    /// otherwise `local_description()` once gathering is complete. Waits until applied.
    fn send_created(
        &mut self,
        from: NodeId,
        to: NodeId,
        created: SessionDescription,
    ) -> Result<(), String> {
        if self.channel(from, to).trickle {
            // Log the events setting it raised, but forward its candidates only after the
            // description, as an application does (the channel is ordered).
            let forwards = self.collect_deferred();
            self.post_description(from, to, &created);
            self.forward(forwards);
            return self.wait_for_descriptions();
        }
        let gathered = self.run_until(SIGNALING_WAIT, |n| {
            n.peer(from).ice_gathering_state() == IceGatheringState::Complete
        });
        if !gathered {
            return Err(format!(
                "{} did not complete gathering within {SIGNALING_WAIT:?}",
                self.name(from)
            ));
        }
        self.send_description(from, to)
    }

    /// Send `from`'s current `local_description()` to `to` now and run until it is applied.
    pub fn send_description(&mut self, from: NodeId, to: NodeId) -> Result<(), String> {
        self.flush();
        let desc = self
            .peer(from)
            .local_description()
            .ok_or("no local description")?;
        self.post_description(from, to, &desc);
        self.wait_for_descriptions()
    }

    /// Run until every description sent has been applied; an error if one could not be.
    /// (Rejected candidates do not fail it: they are in [`Network::signaling_errors`].)
    fn wait_for_descriptions(&mut self) -> Result<(), String> {
        let errors_before = self.description_errors.len();
        let arrived = self.run_until(SIGNALING_WAIT, |n| n.pending_descriptions == 0);
        if !arrived {
            return Err("a description did not arrive".into());
        }
        match self.description_errors.get(errors_before..) {
            Some([first, ..]) => Err(first.clone()),
            _ => Ok(()),
        }
    }

    /// Every description sent so far: `(virtual time, from, to, description)`.
    pub fn sent_descriptions(&self) -> &[SentDescription] {
        &self.sent_descriptions
    }

    fn post_description(&mut self, from: NodeId, to: NodeId, desc: &SessionDescription) {
        let json = serde_json::to_string(desc).expect("description JSON");
        let at = self.elapsed();
        self.sent_descriptions.push(SentDescription {
            at,
            from,
            to,
            description: desc.clone(),
        });
        let text = format!(
            "sends {} ({} SDP lines, {} candidates) to {}",
            desc.kind.as_str(),
            desc.sdp.lines().count(),
            count_candidates(&desc.sdp),
            self.name(to)
        );
        self.note(Some(from), text);
        self.pending_descriptions += 1;
        self.post(from, to, SignalBody::Description(json));
    }

    /// Send one candidate from `from` to `to` over their channel (JSON), e.g. by hand.
    pub fn send_candidate(&mut self, from: NodeId, to: NodeId, candidate: &IceCandidateInit) {
        let json = serde_json::to_string(candidate).expect("candidate JSON");
        self.post(from, to, SignalBody::Candidate(json));
    }

    fn post(&mut self, from: NodeId, to: NodeId, body: SignalBody) {
        if self.signaling.len() >= MAX_SIGNALING {
            self.signaling_errors
                .push("signaling queue full: message dropped".into());
            if matches!(body, SignalBody::Description(_)) {
                self.pending_descriptions = self.pending_descriptions.saturating_sub(1);
            }
            return;
        }
        self.stats.signaling_messages += 1;
        self.seq += 1;
        let at = self.now() + self.channel(from, to).delay;
        self.signaling
            .insert((at, self.seq), Signal { from, to, body });
    }

    /// Apply every signaling message that is due.
    pub(crate) fn deliver_signaling_due(&mut self) {
        let now = self.now();
        while let Some(entry) = self.signaling.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let signal = entry.remove();
            match signal.body {
                SignalBody::Description(json) => {
                    self.pending_descriptions = self.pending_descriptions.saturating_sub(1);
                    self.apply_description(signal.from, signal.to, &json);
                }
                SignalBody::Candidate(json) => match serde_json::from_str(&json) {
                    Ok(c) => self.apply_candidate(signal.to, c),
                    Err(e) => self.error(signal.to, format!("bad candidate JSON: {e}")),
                },
            }
        }
    }

    fn apply_description(&mut self, from: NodeId, to: NodeId, json: &str) {
        let now = self.now();
        let desc: SessionDescription = match serde_json::from_str(json) {
            Ok(d) => d,
            Err(e) => {
                let text = format!("bad description JSON: {e}");
                self.description_errors.push(text.clone());
                return self.error(to, text);
            }
        };
        if let Err(e) = self.peer(to).set_remote_description(now, desc) {
            let text = format!("set_remote_description (from {}): {e}", self.name(from));
            self.description_errors.push(text.clone());
            return self.error(to, text);
        }
        let held: Vec<IceCandidateInit> = {
            let (mine, others) = std::mem::take(&mut self.early_candidates)
                .into_iter()
                .partition(|(node, _)| *node == to);
            self.early_candidates = others;
            mine.into_iter().map(|(_, c)| c).collect()
        };
        for c in held {
            self.apply_candidate(to, c);
        }
    }

    fn apply_candidate(&mut self, to: NodeId, c: IceCandidateInit) {
        let now = self.now();
        if self.peer(to).remote_description().is_none() {
            if self.early_candidates.len() < MAX_SIGNALING {
                self.early_candidates.push((to, c));
            } else {
                self.error(to, "too many candidates held before a description".into());
            }
            return;
        }
        if let Err(e) = self.peer(to).add_ice_candidate(now, c) {
            self.error(to, format!("add_ice_candidate: {e}"));
        }
    }

    fn error(&mut self, node: NodeId, text: String) {
        self.note(Some(node), text.clone());
        let text = format!("{}: {text}", self.name(node));
        self.signaling_errors.push(text);
    }

    /// Drain every peer's events into the log (with the virtual time and a timeline line),
    /// forwarding candidates over trickle channels.
    pub(crate) fn collect(&mut self) {
        let forwards = self.collect_deferred();
        self.forward(forwards);
    }

    /// Drain every peer's events into the log; return the candidates to forward.
    fn collect_deferred(&mut self) -> Vec<(NodeId, NodeId, IceCandidateInit)> {
        let mut forwards = Vec::new();
        for i in 0..self.nodes.len() {
            let id = NodeId(i);
            while let Some(ev) = self.try_peer(id).and_then(|p| p.poll_event()) {
                self.note(Some(id), crate::timeline::describe(&ev));
                if let Event::IceCandidate(c) = &ev {
                    for (&(from, to), ch) in &self.channels {
                        if from == id && ch.trickle {
                            forwards.push((from, to, c.clone()));
                        }
                    }
                }
                self.push_event(id, ev);
            }
        }
        forwards
    }

    fn forward(&mut self, forwards: Vec<(NodeId, NodeId, IceCandidateInit)>) {
        for (from, to, c) in forwards {
            self.send_candidate(from, to, &c);
        }
    }
}
