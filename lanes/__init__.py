"""What a swimlane is outside its workflow: the resource kinds of its ledger, where its apps run
(lane targets) and the janitor's sweep."""
