"""Running the processes: the supervisor, gunicorn web workers and the dispatcher process, their
listening sockets and signals. Imports come from the modules themselves."""
