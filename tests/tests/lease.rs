//! The deployment lease on the local stack's SSM: one run at a time, really. Runs racing for a
//! free lease, and for an expired one (its holder died), are raced many times over: exactly one
//! wins each time, the others fail with `ConflictError` naming the winner, and the winner's
//! release frees the lease for the next run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail by panicking

use o11y_shared::aws::Clients;
use o11y_shared::ctx::{lease, registry, Ctx};
use o11y_shared::state::ProvisionState;
use o11y_tests::stack::{FullStack, StackOptions};
use serde_json::json;

const ROUNDS: usize = 12;
const RACERS: usize = 3;

async fn ctx_for(clients: &Clients, holder: &str) -> Ctx {
    let mut state = ProvisionState::new(json!({"deploymentName": "race", "cluster": {"name": "dr-eks"},
        "namespace": "dr-core", "irsaRoleName": "dr-core-irsa"}));
    state.execution = Some(holder.to_string());
    Ctx::new(clients, &state).await.unwrap()
}

/// Every lease parameter of the deployment `race` (the old single parameter and the generations).
async fn lease_parameters(clients: &Clients) -> Vec<(String, String)> {
    let base = registry::lease_parameter("race");
    let mut out = Vec::new();
    if let Ok(p) = clients.ssm.get_parameter().name(&base).send().await {
        let p = p.parameter().unwrap();
        out.push((p.name().unwrap().to_string(), p.value().unwrap().to_string()));
    }
    let page = clients.ssm.get_parameters_by_path().path(&base).send().await.unwrap();
    for p in page.parameters() {
        out.push((p.name().unwrap().to_string(), p.value().unwrap().to_string()));
    }
    out
}

/// `RACERS` runs acquire at once: the names of the winners, and every loser's error.
async fn race(clients: &Clients, round: usize) -> (Vec<String>, Vec<String>) {
    let mut tasks = Vec::new();
    for r in 0..RACERS {
        let holder = format!("exec-{round}-{r}");
        let ctx = ctx_for(clients, &holder).await;
        tasks.push(tokio::spawn(async move { (holder.clone(), lease::acquire(&ctx, &holder).await) }));
    }
    let (mut won, mut lost) = (Vec::new(), Vec::new());
    for t in tasks {
        let (holder, res) = t.await.unwrap();
        match res {
            Ok(()) => won.push(holder),
            Err(e) => lost.push(format!("{}: {e}", e.name())),
        }
    }
    (won, lost)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runs_racing_for_a_free_or_an_expired_lease_have_exactly_one_winner() {
    let stack = FullStack::start(&StackOptions::default());
    let clients = stack.clients().await;
    for round in 0..ROUNDS {
        // every other round, the lease is held by a run that died: expired, left behind (in the
        // layout of earlier versions on some rounds: the single parameter)
        if round % 2 == 1 {
            let dead = json!({"holder": format!("dead-{round}"), "expires": 1}).to_string();
            let name = if round % 4 == 1 {
                registry::lease_parameter("race")
            } else {
                format!("{}/{}", registry::lease_parameter("race"), 7 + round)
            };
            clients
                .ssm
                .put_parameter()
                .name(name)
                .value(dead)
                .r#type(aws_sdk_ssm::types::ParameterType::String)
                .send()
                .await
                .unwrap();
        }
        let (won, lost) = race(&clients, round).await;
        assert_eq!(won.len(), 1, "round {round}: winners {won:?}, losers {lost:?}");
        assert_eq!(lost.len(), RACERS - 1);
        for l in &lost {
            assert!(l.starts_with("ConflictError") && l.contains(&won[0]), "round {round}: {l}");
        }
        // the winner holds it: one live lease parameter, its own
        let held = lease_parameters(&clients).await;
        let live: Vec<_> = held.iter().filter(|(_, v)| v.contains(&won[0])).collect();
        assert_eq!(live.len(), 1, "round {round}: {held:?}");
        // a retried step of the winner takes it again; a newcomer is refused while it is held
        let winner = ctx_for(&clients, &won[0]).await;
        lease::acquire(&winner, &won[0]).await.unwrap();
        let late = ctx_for(&clients, "late").await;
        assert!(lease::acquire(&late, "late").await.is_err());
        // released: nothing of the lease is left, expired leftovers included
        assert!(lease::release(&winner, &won[0]).await.unwrap());
        assert_eq!(lease_parameters(&clients).await, Vec::<(String, String)>::new(), "round {round}");
        assert!(!lease::release(&winner, &won[0]).await.unwrap(), "released twice");
    }
}
