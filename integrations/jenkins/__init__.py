"""Jenkins: builds by job, and a lane's folder with one job per app, through python-jenkins."""
