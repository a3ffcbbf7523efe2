"""How the lab manager runs batches on the lab's robots and stations (no ROS).

A batch's workflow (config/workflows.yaml) says which station kinds its carrier (a rack of
vials, a tray of specimens) visits; the scheduler takes a free carrier from home, and for
every step reserves a station of that kind, has a robot carry the carrier there (drive,
transfer to the robot's deck, drive, transfer into the station), runs the station's process
and merges what each station reports (as-dispensed amounts, measurements) per sample; then
the carrier goes home. Several batches run at once, each in its own thread: stations, robots
and carriers are reserved (lab.core.operations.resources), so while one rack is under the
lamp a robot prepares the next, and two batches never use a station at the same time. Each
batch's progress is recorded in the campaign database.

One module per concern:

    orders     what the scheduler orders and hears back; the `Lab` that carries orders out
    batch      a batch in flight (Run) and its samples, as recorded
    mode       running, paused, emergency-stopped (every order passes the start gate)
    view       the world as the node reports it: carriers, poses, batteries, presence
    dispatch   one order sent, with its limit; the steps under way
    fleet      robots: transports, legs, making way, charging, robots the network lost
    steps      a workflow step at a station: choice, retries, reroutes, merging reports
    journal    the batch records and busy intervals in the campaign database
    recovery   the start-up recovery of batches and carriers a predecessor left
    scheduler  the Scheduler the node talks to, the batch lifecycle, the status snapshot
"""

from lab.core.operations.scheduler.batch import Cancellable, NeverCancelled, Run, Sample, Watcher
from lab.core.operations.scheduler.fleet import DECK
from lab.core.operations.scheduler.orders import (
    Amounts,
    Call,
    Drive,
    Lab,
    Log,
    Order,
    Outcome,
    Park,
    Process,
    Progress,
    Result,
    RobotOffline,
    SampleReport,
    Transfer,
)
from lab.core.operations.scheduler.scheduler import RobotSnapshot, Scheduler, Snapshot

__all__ = ["DECK", "Amounts", "Call", "Cancellable", "Drive", "Lab", "Log", "NeverCancelled", "Order", "Outcome",
           "Park", "Process", "Progress", "Result", "RobotOffline", "RobotSnapshot", "Run", "Sample", "SampleReport",
           "Scheduler", "Snapshot", "Transfer", "Watcher"]
