-- wrk script: DELETE the same purge URL over and over (the server's ceiling).
wrk.method = "DELETE"
