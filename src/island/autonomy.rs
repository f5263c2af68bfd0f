//! What islands themselves may do and what the engine tells us about them: token checks,
//! agent-emitted events (agent_state), and the container watchdog (container.crashed).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::Islands;
use crate::api::AgentStateInfo;
use crate::api::DesiredState;
use crate::error::{Error, Result};
use crate::events::EventType;
use crate::runtime::{ContainerEvent, ContainerObs, ContainerState};
use crate::util::{self, lock};

/// How long an announced stop of ours waits for its `die` event before it is forgotten.
const EXPECT_FOR: Duration = Duration::from_secs(30);

/// Latest agent-emitted signal per island: the rollup and per agent.
#[derive(Default, Clone)]
pub struct AgentStates {
    pub rollup: Option<AgentStateInfo>,
    pub agents: std::collections::HashMap<String, AgentStateInfo>,
}

impl Islands {
    /// Whether `token` is island `name`'s (constant time).
    pub fn token_matches(&self, name: &str, token: &str) -> bool {
        let map = lock(&self.slots);
        map.get(name).is_some_and(|s| {
            !s.rec.token.is_empty() && util::ct_eq(s.rec.token.as_bytes(), token.as_bytes())
        })
    }

    /// The island whose token this is.
    pub fn island_of_token(&self, token: &str) -> Option<String> {
        let map = lock(&self.slots);
        // Compare against every island so timing does not say where a match was.
        let mut found = None;
        for (name, s) in map.iter() {
            if !s.rec.token.is_empty() && util::ct_eq(s.rec.token.as_bytes(), token.as_bytes()) {
                found = Some(name.clone());
            }
        }
        found
    }

    /// POST /v1/internal/agent-event: record the signal and publish it.
    pub fn agent_event(
        &self,
        island: &str,
        agent: &str,
        kind: EventType,
        payload: Value,
    ) -> Result<()> {
        let latest = kind
            .signal()
            .ok_or_else(|| Error::bad(format!("{kind} is not an agent event")))?;
        let rec = self.record(island)?;
        if !agent.is_empty() && !rec.agents.iter().any(|a| a.id == agent) {
            return Err(Error::NotFound(format!(
                "agent {agent:?} not found in island {island:?}"
            )));
        }
        let st = AgentStateInfo {
            latest,
            updated_at: util::now_rfc3339(),
        };
        self.with_slot(island, |slot| {
            let e = &mut slot.agent_states;
            e.rollup = Some(st.clone());
            if !agent.is_empty() {
                e.agents.insert(agent.to_string(), st);
            }
        })
        .ok_or_else(|| Error::island_not_found(island))?;
        self.events.publish(kind, island, agent, payload);
        Ok(())
    }

    /// We are about to stop or remove the island's container: its `die` is not a crash.
    pub(super) fn expect_stop(&self, island: &str) {
        self.with_slot(island, |slot| slot.own_stop = Some(Instant::now()));
    }

    /// The engine watcher saw a transition on an island's container.
    pub fn on_container(&self, island: &str, obs: &ContainerObs, ev: ContainerEvent) {
        let Ok(rec) = self.record(island) else { return };
        // A die we announced is consumed by its event; any other die is the engine's doing.
        let ours = ev == ContainerEvent::Died
            && self
                .with_slot(island, |slot| slot.own_stop.take())
                .flatten()
                .is_some_and(|t| t.elapsed() < EXPECT_FOR);
        match ev {
            ContainerEvent::Started | ContainerEvent::Resumed
                if obs.state == ContainerState::Running =>
            {
                self.events.publish(
                    EventType::IslandRunning,
                    island,
                    "",
                    json!({ "container": "running" }),
                );
            }
            ContainerEvent::Died if !ours && rec.state == DesiredState::Running => {
                self.events.publish(
                    EventType::ContainerCrashed,
                    island,
                    "",
                    json!({ "exit_code": obs.exit_code, "oom_killed": obs.oom_killed }),
                );
            }
            _ => {}
        }
    }
}
